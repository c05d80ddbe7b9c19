from services.pilot.service import PilotService

PilotService.main()
