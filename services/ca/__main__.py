from services.ca.service import CaService

CaService.main()
